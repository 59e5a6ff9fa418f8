"""``wit filter``: duplicate images, CLIP image-text score and caption language, after download."""
