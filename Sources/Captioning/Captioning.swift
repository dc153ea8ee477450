// Captioning module.
