"""Texts that break tokenizers: whitespace runs, contractions, accents and combining marks, scripts
from Cyrillic to CJK, emoji sequences, control and invisible characters, 200-character words, code,
and special tokens written in the text; and the cases a tokenizer fixture records for them.
Shared by the tokenizer fixture scripts."""
hostile = [
    "", " ", "  ", "\t\n", "\n\n\n", "a  b", "a   b   c", "trailing   ", "   leading", "tab\tand\nnewline\r\nand\rcr",
    "Hello, world!", "HELLO WORLD", "don't won't I'm you're we've they'll he'd it's", "DON'T 'S 'T 's't", "O'Reilly's",
    "héllo wörld", "naïve café résumé", "e\u0301 combining acute", "n\u0303 and a\u0308\u0301 stacked", "Zalgo t̷̢e̵x̴t̶",
    "Привет, как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "你好，世界！",
    "日本語のテキストです。", "한국어 텍스트", "中文English混合text", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ",
    "emoji 😀😃😄 test 👍🏽", "🇩🇪 flag and ❤️ heart", "family 👨‍👩‍👧‍👦 zwj", "price: $1,234.56 (approx.)",
    "3.14159 2.71828 1e-10", "12345678901234567890", "١٢٣ arabic digits", "Ⅻ roman ⅻ numeral", "½ ¼ ¾ fractions",
    "email me@example.com or http://x.org/a?b=c&d=e", "C++ and C# and F#", "!!!???...,,,;;;:::", "a--b---c----d",
    "(((nested))) [[brackets]] {{braces}}", "«guillemets» „quotes“ “smart” ‘single’", "under_score snake_case CamelCase",
    "zero\u200bwidth\u200cjoiners\u200d", "control\u0001chars\u0007here\u001f", "replacement \ufffd char", "null\u0000byte",
    "soft\u00adhyphen", "non\u00a0breaking\u00a0space", "ideographic\u3000space", "em\u2003space", "line\u2028separator",
    "a" * 200, "xy" * 100 + " then words", "antidisestablishmentarianism " * 4, "supercalifragilisticexpialidocious",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "rm -rf /tmp/* && echo 'done'",
    "<html><body>tags</body></html>", "#hashtag @mention $variable %percent ^caret &amp *star", "~tilde `backtick` |pipe| \\backslash",
    "a tool to <mask> files", "<mask>", "<mask><mask> twice", "x<mask>y", "  <mask> after spaces", "<MASK> is not special",
    "<s> and </s> in the text", "<pad><unk>", "ends with </s>", "\t<mask>\n", "<<mask>>", "<mask >",
    "Debian GNU/Linux 12 (bookworm) x86_64", "libopenblas0-pthread: Optimized BLAS (linear algebra) library",
    "version 1.2.3-4ubuntu5~bpo11+1", "GPL-2+ or LGPL-2.1+", "𝐁𝐨𝐥𝐝 math letters", "Ⓐ circled ⓑ", "ǅ digraph ǈ",
]


def reference_cases(tok, texts, rng):
    """What `tokenizers` gives for every text alone, every 7th truncated to 8 and 64 tokens, 120
    random pairs (plain and truncated), and three fixed pairs."""
    def case(text, pair=None, max_length=None):
        if max_length:
            tok.enable_truncation(max_length=max_length, strategy="longest_first")
        else:
            tok.no_truncation()
        enc = tok.encode(text, pair)
        c = {"text": text, "max_length": max_length, "input_ids": enc.ids}
        if pair is not None:
            c["text_pair"] = pair
        return c

    cases = [case(t) for t in texts]
    cases += [case(t, max_length=ml) for t in texts[::7] for ml in (8, 64)]
    for _ in range(120):
        a, b = rng.choice(texts), rng.choice(texts)
        cases += [case(a, b), case(a, b, max_length=rng.choice([12, 32, 128]))]
    cases += [case("short", "a much longer second sentence " * 10, 24), case("a much longer first sentence " * 10, "short", 24),
              case("<mask> one", "two <mask>")]
    return cases
