"""The application: data sources, the ``tmw run`` pipeline and its run directory, explanations of any image for
``tmw explain``, the HTML report and the ``tmw`` command."""
