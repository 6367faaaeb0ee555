"""Private machinery shared by every part of the package: files, figures, classifier outputs, images, settings.

Nothing here is public API; every other subpackage may import from here, and nothing here imports from them.
"""
