"""The contract: committed OpenAPI and AsyncAPI files, and the AsyncAPI generator."""
