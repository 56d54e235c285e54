"""Dataset readers (RRSIS-D, RefSegRS, our JSONL manifest) and the synthetic scene generator."""
