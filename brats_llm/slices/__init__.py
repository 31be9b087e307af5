"""Slices: 2D images of the volumes (axial, optionally coronal and sagittal) for the vision-LLMs."""
