"""Data side: the ChangeIt-format dataset index, 1-fps decoding, the frame cache, augmentation and
the synthetic ChangeIt-format video generator."""
