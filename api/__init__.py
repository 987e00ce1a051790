"""REST interface: one module per resource, thin views over the domain services."""
