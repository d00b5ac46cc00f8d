"""backmark: watermark image classifiers by backdooring them (Adi et al., USENIX Security 2018)."""

__version__ = "0.1.0"
