"""PyTorch modules whose state_dict layout equals the released checkpoint files, and the code that
loads and recognises those files (checkpoints.py)."""
