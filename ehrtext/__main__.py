"""``python -m ehrtext``: the ``ehrtext`` command (so ``torchrun -m ehrtext train ...`` works).

Example::

    python -m ehrtext score --model model/ --input notes.jsonl --output scores.jsonl
    torchrun --standalone --nproc_per_node=2 -m ehrtext train --data notes.jsonl --output m/
"""

from ehrtext.cli import main

if __name__ == "__main__":
    main()
