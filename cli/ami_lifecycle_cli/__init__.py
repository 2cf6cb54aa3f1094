"""The `ami-lifecycle` command line (`main`), outside the Lambda layer; `render` turns the reports'
data into text (a leaf: the demo uses it too)."""
