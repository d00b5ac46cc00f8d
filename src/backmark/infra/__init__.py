"""Generic infrastructure low in the layering: nothing here imports a feature package."""
