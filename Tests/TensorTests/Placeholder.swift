// Tensor tests
