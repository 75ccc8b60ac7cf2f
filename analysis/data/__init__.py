"""Labelled texts: the offline sets and hub loaders (tasks), user files (files), the stratified sample of N texts
(sampling) and files or datasets read in passes without holding them (streamed)."""
