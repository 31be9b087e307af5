"""The paper's 3D CNN classifier and segmenter: models, data, training stage."""
