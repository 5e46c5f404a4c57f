"""Data for tfexperts: label hierarchies and expert slices of upstream data (`hierarchy`,
`upstream`), preprocessing (`preprocess`, `pipeline`), the VTAB-1k / transfer task registry
(`tasks`), and the offline tfds datasets the project ships (`builders`, `offline`)."""
