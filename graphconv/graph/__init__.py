"""The op graph: Diagram + Metadata → a validated networkx DAG of ops. Imports no torch."""
