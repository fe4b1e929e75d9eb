"""Model loading shared by every stage: verified TFLite files and their manifest."""
