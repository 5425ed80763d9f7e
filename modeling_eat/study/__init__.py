"""The SSL study: does pre-training pay, and what do EAT's parts contribute? Its protocol (`protocol`), data
(`data`), the jobs that run the project's own scripts (`runner`), the frozen-encoder probe (`evaluate`) and the
report (`report`); `python -m modeling_eat.ssl_study` (`cli`) runs it."""
