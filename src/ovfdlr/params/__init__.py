"""PyRadiomics parameter files shipped with ovfdlr (ct-vertebra.yaml)."""
