"""Token ids, symbols and audio constants shared by training, decoding and export."""

# Token ids are fixed for every tokenizer so that CTC, the attention decoder and exported models
# agree: blank first (CTC and sherpa-onnx read it from id 0), then unk, then sos/eos.
BLANK_ID = 0
UNK_ID = 1
SOS_EOS_ID = 2

BLANK_SYMBOL = "<blank>"
UNK_SYMBOL = "<unk>"
SOS_EOS_SYMBOL = "<sos/eos>"

# Padding value of token targets; losses ignore these positions.
IGNORE_ID = -1

SAMPLE_RATE = 16000
