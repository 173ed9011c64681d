"""Reports rendered from a results.json document: JUnit XML, a self-contained HTML page, a matrix."""
