"""Model backends: transformers (hf.py) and open_clip (openclip.py), both behind base.Backend."""
