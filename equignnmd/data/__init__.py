"""Reference data: LAMMPS generation, the on-disk format, conversion and the pair dataset."""
