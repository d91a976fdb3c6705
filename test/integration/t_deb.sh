#!/usr/bin/env bash
# `make deb` builds a package that holds the programs, man pages, systemd unit,
# mows.conf.example, copyright and changelog, with Depends from dpkg-shlibdeps; it installs
# into and uninstalls cleanly from a scratch dpkg root (dpkg --root), the installed programs
# run, and lintian finds no errors (warnings are listed). A copy without its copyright file
# must give a lintian error, so the lintian check can fail.
# timeout: 240
. "$(dirname "$0")/lib.sh"
for c in dpkg-deb dpkg-shlibdeps lintian man; do
	command -v $c >/dev/null || fail "needs $c: run 'make deps' (tools/deps.sh installs lintian and dpkg-dev)"
done

OUT=$SCRATCH/deb
out=$(cd "$MOWS_ROOT" && DEB_OUT=$OUT ./packaging/deb/build.sh 2>&1) || fail "packaging/deb/build.sh failed: $out"
DEB=$(tail -n 1 <<<"$out")
[ -f "$DEB" ] || fail "build.sh did not print a .deb: $out"
note "built $DEB ($(stat -c %s "$DEB") bytes)"

# ---- contents ----
dpkg-deb -c "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|' >"$SCRATCH/list"
for f in /usr/bin/mows-fuse /usr/bin/mowsctl /usr/bin/mows-crc32 \
	/usr/share/man/man8/mows-fuse.8.gz /usr/share/man/man8/mowsctl.8.gz \
	/usr/share/man/man1/mows-crc32.1.gz /usr/share/man/man5/mows.conf.5.gz \
	/lib/systemd/system/mows-fuse@.service /usr/share/doc/mows/mows.conf.example \
	/usr/share/doc/mows/copyright /usr/share/doc/mows/changelog.gz; do
	grep -qxF "$f" "$SCRATCH/list" || soft_fail "the package lacks $f"
done
dep=$(dpkg-deb -f "$DEB" Depends)
for d in 'libc6 (>=' 'libfuse3-3' 'libisal2' 'libinih1' 'libssl3' 'fuse3'; do
	[[ $dep == *"$d"* ]] || soft_fail "Depends lacks '$d': $dep"
done
note "Depends: $dep"

# ---- install into a scratch dpkg database, run, remove ----
R=$SCRATCH/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
: >"$R/var/lib/dpkg/status"
dpkg --root="$R" --force-depends --force-not-root -i "$DEB" >"$SCRATCH/dpkg.log" 2>&1 ||
	fail "dpkg --root -i failed: $(tail -n 5 "$SCRATCH/dpkg.log")"
[ -x "$R/usr/bin/mows-fuse" ] || fail "dpkg -i left no $R/usr/bin/mows-fuse"
"$R/usr/bin/mows-fuse" --check-config --max-memory=64M --backing "$SCRATCH" >/dev/null 2>"$SCRATCH/cc.err" ||
	soft_fail "the installed mows-fuse --check-config failed: $(cat "$SCRATCH/cc.err")"
"$R/usr/bin/mowsctl" --help | grep -q usage || soft_fail "the installed mowsctl --help says no usage"
grep -q '^ExecStart=/usr/bin/mows-fuse ' "$R/lib/systemd/system/mows-fuse@.service" ||
	soft_fail "the installed unit does not run /usr/bin/mows-fuse: $(grep ExecStart "$R/lib/systemd/system/mows-fuse@.service")"
for p in man8/mows-fuse.8 man8/mowsctl.8 man1/mows-crc32.1 man5/mows.conf.5; do
	err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$R/usr/share/man/$p.gz" 2>&1 >/dev/null)
	[ -z "$err" ] || soft_fail "installed $p: $err"
done
dpkg --root="$R" --force-not-root -r mows >>"$SCRATCH/dpkg.log" 2>&1 || soft_fail "dpkg --root -r mows failed"
left=$(find "$R" -type f ! -path "$R/var/*")
[ -z "$left" ] || soft_fail "files left after dpkg -r: $left"

# ---- lintian: no errors; warnings listed ----
lintian --tag-display-limit 0 -I "$DEB" >"$SCRATCH/lintian.out" 2>&1
grep -E '^[EWI]: ' "$SCRATCH/lintian.out" | sed 's/^/  lintian: /'
errors=$(grep -c '^E: ' "$SCRATCH/lintian.out")
warnings=$(grep -c '^W: ' "$SCRATCH/lintian.out")
[ "$errors" -eq 0 ] || soft_fail "lintian: $errors error(s): $(grep '^E: ' "$SCRATCH/lintian.out" | head -n 5)"
note "lintian: $errors errors, $warnings warnings"

# The lintian check can fail: the same package without copyright is an error.
dpkg-deb -R "$DEB" "$SCRATCH/broken"
rm "$SCRATCH/broken/usr/share/doc/mows/copyright"
sed -i '\|usr/share/doc/mows/copyright|d' "$SCRATCH/broken/DEBIAN/md5sums"
dpkg-deb --root-owner-group --build "$SCRATCH/broken" "$SCRATCH/broken.deb" >/dev/null
lintian --tag-display-limit 0 "$SCRATCH/broken.deb" >"$SCRATCH/lintian-broken.out" 2>&1
grep -q '^E: mows: no-copyright-file' "$SCRATCH/lintian-broken.out" ||
	soft_fail "lintian did not flag a package without copyright: $(head -n 5 "$SCRATCH/lintian-broken.out")"
soft_done
note "ok"
