"""The config schema: field types the techniques annotate their parameters with (`fields`), the
types of foreign targets' keys (`foreign`), and the check of a composed config (`config`)."""
