"""Reports: the demo run, its figures and its markdown/JSON summaries."""
