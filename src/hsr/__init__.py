"""hsr: Hierarchical Safety Realignment for pruned vision-language models and LLMs."""

__version__ = "0.1.0"
