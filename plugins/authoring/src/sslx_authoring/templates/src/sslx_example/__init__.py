"""The templates of ``sslx new-plugin``: one working component per kind, each
a module here (``objective.py`` holds the objective ``ExampleObjective``,
registered as 'example'), with its tests in ../../tests/test_<kind>.py.

``sslx new-plugin NAME --kind KIND`` copies KIND's module to
``src/sslx_NAME/__init__.py`` and its tests to ``tests/test_NAME.py``,
renaming the placeholder plugin 'example' throughout: the package
``sslx_example`` (and ``sslx_example.KIND``) becomes ``sslx_NAME``, the
distribution ``sslx-example`` ``sslx-NAME``, ``Example`` in class names the
name in CamelCase, and 'example' the name. So the templates say "example"
only as the plugin's name, never as a word.
"""
