#!/usr/bin/env bash
# Parse "--name value" options into shell variables that the sourcing script already defined.
#
# Source this after setting defaults: "--stop_stage 3" sets stop_stage=3 and "--train-opts x"
# sets train_opts=x. An option with no matching variable is an error, so a typo never passes
# silently. "--help" prints the calling script's header comment and its options block: the
# lines from "# Options" to the next blank line, as "--name default" with their comments.

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
      echo "Options:"
      sed -n '/^# Options/,/^$/p' "$0" | grep -E '^[a-z_]+=' | sed 's/^/  --/; s/=/ /'
      exit 0
      ;;
    --*=*)
      echo "$0: write options as '--name value', not '$1'" >&2
      exit 1
      ;;
    --*)
      name=${1#--}
      name=${name//-/_}
      if [ -z "${!name+set}" ]; then
        echo "$0: unknown option $1 (no variable '$name' in the script)" >&2
        exit 1
      fi
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value" >&2
        exit 1
      fi
      printf -v "$name" '%s' "$2"
      shift 2
      ;;
    *)
      break
      ;;
  esac
done
