"""The text layer: pure Python, ``str`` in, tokens and spans out. Imports neither torch nor spaCy.

Example:
    >>> from ehrtext.text import normalize, Tokenizer
    >>> normalize("ＢＰ　150/90mmHg").text
    'BP 150/90mmHg'
    >>> [t.text for t in Tokenizer().tokenize("既往有2型糖尿病史")]
    ['既往', '有', '2型糖尿病', '史']
"""

from ehrtext.text.normalize import Normalized, NormalizerConfig, OffsetMap, normalize
from ehrtext.text.tokenize import Token, Tokenizer, Tokens

__all__ = [
    "Normalized",
    "NormalizerConfig",
    "OffsetMap",
    "Token",
    "Tokenizer",
    "Tokens",
    "normalize",
]
