"""Writers of the field's file formats, from per-frame labels and probabilities."""
