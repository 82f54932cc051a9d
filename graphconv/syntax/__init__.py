"""Reading specs: Mermaid and YAML text → Diagram and Metadata. Imports no torch."""
