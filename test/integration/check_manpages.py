#!/usr/bin/env python3
"""Checks that man pages document every flag and config key the binaries know.

usage: check_manpages.py MANDIR BINDIR
Flags come from each program's --help text, config keys (with their defaults) from
`mows-fuse --list-keys`, so a flag or key added to the code is caught here until it is
documented. Prints one line per gap; exits 1 if there is any.
"""
import re
import subprocess
import sys

FLAG = re.compile(r'(?<![\w-])(--?[a-z][a-z0-9-]*)')


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    return p.stdout + p.stderr


def page_text(path):
    """Roff source with escapes that matter for matching undone: \\- to -, fonts dropped."""
    with open(path, encoding='utf-8') as f:
        s = f.read()
    s = s.replace('\\-', '-')
    s = re.sub(r'\\f[BIRP]', '', s)
    s = s.replace('\\(aq', "'")
    return s


def flags_of(help_text):
    """Every -x / --long-flag in a usage text, plus the command words of a 'commands:' list."""
    flags = set(FLAG.findall(help_text))
    flags.discard('-')
    in_cmds = False
    for line in help_text.splitlines():
        if line.strip().lower() == 'commands:':
            in_cmds = True
            continue
        if in_cmds:
            m = re.match(r'\s+([a-z][a-z-]*)\b', line)
            if not m:
                in_cmds = False
                continue
            flags.add(m.group(1))
    return flags


def mentions(text, word):
    return re.search(r'(?<![\w-])' + re.escape(word) + r'(?![\w-])', text) is not None


def check_flags(gaps, page, prog_help, page_name):
    text = page_text(page)
    for flag in sorted(flags_of(prog_help)):
        if not mentions(text, flag):
            gaps.append(f'{page_name}: does not document {flag!r} (from --help)')


def check_keys(gaps, page, list_keys):
    """Each key needs a '.TP' entry whose tag is '.B "KEY = DEFAULT"' with the table's default."""
    text = page_text(page)
    lines = text.splitlines()
    documented = {}
    for i, line in enumerate(lines[:-1]):
        if line.strip() != '.TP':
            continue
        m = re.match(r'\.B "([a-z0-9_]+) =\s*(.*)"$', lines[i + 1].strip())
        if m:
            documented[m.group(1)] = m.group(2).strip()
    keys = {}
    for line in list_keys.splitlines():
        parts = line.split('\t')
        if len(parts) >= 2:
            keys[parts[0]] = parts[1]
    if len(keys) < 10:
        gaps.append(f'mows-fuse --list-keys gave {len(keys)} keys: {list_keys[:200]!r}')
    for key, default in sorted(keys.items()):
        if key not in documented:
            gaps.append(f'mows.conf.5: key {key!r} has no \'.TP\' / \'.B "{key} = {default}"\' entry')
        elif documented[key] != default:
            gaps.append(f'mows.conf.5: {key} documented with default {documented[key]!r}, '
                        f'the code has {default!r}')
    for key in sorted(set(documented) - set(keys)):
        gaps.append(f'mows.conf.5: documents {key!r}, which mows-fuse does not know')


def main():
    mandir, bindir = sys.argv[1], sys.argv[2]
    gaps = []
    check_flags(gaps, f'{mandir}/mows-fuse.8', run([f'{bindir}/mows-fuse', '--help']),
                'mows-fuse.8')
    check_flags(gaps, f'{mandir}/mowsctl.8', run([f'{bindir}/mowsctl', '--help']), 'mowsctl.8')
    check_flags(gaps, f'{mandir}/mows-crc32.1', run([f'{bindir}/mows-crc32', '--help']),
                'mows-crc32.1')
    check_keys(gaps, f'{mandir}/mows.conf.5', run([f'{bindir}/mows-fuse', '--list-keys']))
    for g in gaps:
        print(g)
    return 1 if gaps else 0


if __name__ == '__main__':
    sys.exit(main())
