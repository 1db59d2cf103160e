"""Note classifiers: ``rnn`` (BiGRU/BiLSTM, torch) and ``linear`` (TF-IDF + linear model).

Each submodule is imported only when used (torch is heavy).

Example:
    >>> from ehrtext.models.rnn import RNNClassifier                     # doctest: +SKIP
    >>> RNNClassifier(vocab_size=5000, num_labels=5, task="multiclass")  # doctest: +SKIP
"""
