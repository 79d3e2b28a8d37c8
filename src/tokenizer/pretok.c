/*
 * pretok.c - the GPT-2 pre-tokenizer regex as a hand-written scanner (no regex engine):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s = Unicode White_Space, \p{L} = L*, \p{N} = N* (unicode-tables.c), as HF's onig and
 * fancy-regex engines read it. Contractions are ASCII and case-sensitive. Bytes that are not
 * valid UTF-8 are single 'other' characters, so any byte string splits without loss.
 */
#include "tokenizer-impl.h"

/* Class and length of the char at s[i]; ASCII takes the fast path. */
static const uint8_t ascii_class[128] = {
    ['\t'] = HM_UC_SPACE, ['\n'] = HM_UC_SPACE, ['\v'] = HM_UC_SPACE, ['\f'] = HM_UC_SPACE,
    ['\r'] = HM_UC_SPACE, [' '] = HM_UC_SPACE,
    ['0'] = HM_UC_NUMBER, ['1'] = HM_UC_NUMBER, ['2'] = HM_UC_NUMBER, ['3'] = HM_UC_NUMBER,
    ['4'] = HM_UC_NUMBER, ['5'] = HM_UC_NUMBER, ['6'] = HM_UC_NUMBER, ['7'] = HM_UC_NUMBER,
    ['8'] = HM_UC_NUMBER, ['9'] = HM_UC_NUMBER,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static inline int char_at(const uint8_t *s, size_t n, size_t i, int *len)
{
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return ascii_class[c];
    }
    uint32_t cp;
    int l = hm_utf8_decode(s + i, n - i, &cp);
    if (!l) {
        *len = 1;
        return HM_UC_OTHER;
    }
    *len = l;
    return hm_uc_class(cp);
}

/* End of the run of chars of class k starting at i. */
static size_t run_of(const uint8_t *s, size_t n, size_t i, int k)
{
    while (i < n) {
        int l;
        if (char_at(s, n, i, &l) != k)
            break;
        i += (size_t)l;
    }
    return i;
}

size_t hm_pretok_next(const char *text, size_t n, size_t pos)
{
    const uint8_t *s = (const uint8_t *)text;
    uint8_t c = s[pos];
    if (c == '\'' && pos + 1 < n) {
        uint8_t c1 = s[pos + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return pos + 2;
        if (pos + 2 < n) {
            uint8_t c2 = s[pos + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return pos + 3;
        }
    }
    int len;
    int k = char_at(s, n, pos, &len);
    if (c == ' ' && pos + 1 < n) {
        int len2;
        int k2 = char_at(s, n, pos + 1, &len2);
        if (k2 != HM_UC_SPACE)
            return run_of(s, n, pos + 1 + (size_t)len2, k2);
    }
    if (k != HM_UC_SPACE)
        return run_of(s, n, pos + (size_t)len, k);
    /* Whitespace: \s+(?!\S) keeps the last char for the next token unless at the end. */
    size_t last = pos, i = pos + (size_t)len;
    while (i < n) {
        int l;
        if (char_at(s, n, i, &l) != HM_UC_SPACE)
            break;
        last = i;
        i += (size_t)l;
    }
    if (i == n || last == pos)
        return i;
    return last;
}
