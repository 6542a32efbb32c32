"""Proxy fine-tuning (LoRA or full) and self-data distillation."""
