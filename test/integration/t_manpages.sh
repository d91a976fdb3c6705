#!/usr/bin/env bash
# The man pages in man/ document every command-line flag (from each program's --help) and
# every config key with its default (from mows-fuse --list-keys), and man(1) renders each with
# groff warnings on and none given. A copy with one key and one flag removed must fail the
# same check, so the check can fail.
# timeout: 60
. "$(dirname "$0")/lib.sh"
need_cmd man groff python3

MAN=$MOWS_ROOT/man
pages=(mows-fuse.8 mowsctl.8 mows-crc32.1 mows.conf.5)
check() { python3 "$MOWS_IT/check_manpages.py" "$1" "$MOWS_ROOT"; }

for p in "${pages[@]}"; do
	[ -f "$MAN/$p" ] || { soft_fail "$MAN/$p is missing"; continue; }
	for w in "" "=w"; do
		LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings$w -l "$MAN/$p" >"$SCRATCH/$p.txt" 2>"$SCRATCH/$p.err"
		rc=$?
		[ $rc -eq 0 ] || soft_fail "man --warnings$w -l $p exited $rc"
		[ -s "$SCRATCH/$p.err" ] && soft_fail "man --warnings$w -l $p: $(head -n 5 "$SCRATCH/$p.err")"
	done
	grep -q '^NAME' "$SCRATCH/$p.txt" || soft_fail "$p renders without a NAME section"
	# No line wider than MANWIDTH (an unbreakable word overflows it).
	wide=$(LC_ALL=C.UTF-8 wc -L <"$SCRATCH/$p.txt")
	[ "$wide" -le 80 ] || soft_fail "$p: a line is $wide columns wide, more than MANWIDTH=80"
done

out=$(check "$MAN") || soft_fail "coverage gaps:
$out"
note "coverage: $("$MOWS_FUSE" --list-keys | wc -l) keys documented"

# The check itself must see a gap: drop max_memory's entry and mowsctl's --json.
mkdir "$SCRATCH/broken"
cp "$MAN"/* "$SCRATCH/broken/"
sed -i '/^\.B "max_memory = /d' "$SCRATCH/broken/mows.conf.5"
sed -i 's/\\-\\-json/\\-\\-jsn/g' "$SCRATCH/broken/mowsctl.8"
sed -i 's/^\.B "chunk_size = 4M"/.B "chunk_size = 8M"/' "$SCRATCH/broken/mows.conf.5"
out=$(check "$SCRATCH/broken") && soft_fail "a page set missing max_memory and --json passed the check"
for want in "key 'max_memory'" "'--json'" "chunk_size documented with default '8M'"; do
	grep -qF "$want" <<<"$out" || soft_fail "the broken copy's report lacks $want: $out"
done
soft_done
note "ok: ${pages[*]}"
