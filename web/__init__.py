"""HTTP only: one blueprint per audience, each parsing input and calling billing."""
