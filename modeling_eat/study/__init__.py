"""The SSL study: does pre-training pay, and what do EAT's parts contribute? Its protocol (`protocol`), the jobs that
run the package's own commands (`runner`), the frozen-encoder probe (`evaluate`) and the report (`report`);
`python -m modeling_eat.ssl_study` (`cli`) runs it. The quickstart (`quickstart`) is the smallest such comparison."""
