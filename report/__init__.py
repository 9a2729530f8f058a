"""Everything that makes the report: the Python that reads the results and decides the sentences, the Typst
template that lays them out, the theory answers and the bibliography. ``python -m report.build`` writes
report/report.pdf; the notebooks import the same parts."""
