#!/bin/sh
# Builds build/deb/mows_VERSION_ARCH.deb with dpkg-deb: a fresh copy of the source tree is
# built with Debian's hardening flags (dpkg-buildflags, hardening=+all), `make install`ed into
# a staging root (PREFIX=/usr), man pages and changelog compressed as Debian policy wants,
# binaries stripped, Depends computed by dpkg-shlibdeps from the binaries' libraries (plus
# fuse3 for fusermount3). No network, no debhelper. Run from the top of the tree (make deb
# does); DEB_OUT=DIR builds in DIR instead of build/deb. Prints the .deb's path last.
set -eu
here=packaging/deb
[ -f "$here/control.in" ] || { echo "build.sh: run from the top of the mows tree" >&2; exit 2; }
for c in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog strip gzip; do
	command -v "$c" >/dev/null || { echo "build.sh: needs $c (apt-get install dpkg-dev binutils)" >&2; exit 2; }
done
version=$(dpkg-parsechangelog -l "$here/changelog" -S Version)
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$here/changelog" | head -n 1)}
out=$(realpath -m "${DEB_OUT:-build/deb}") # DEB_OUT: another output directory
root=$out/root
rm -rf "$out"
mkdir -p "$root/DEBIAN"
umask 022

# A copy, so the developer's objects (other flags, maybe sanitizers) never reach the package.
src=$out/src
mkdir -p "$src"
tar --exclude=./build --exclude=./.git --exclude='*.o' --exclude='*.d' --exclude='*.a' \
	--exclude=./test/bin -cf - . | tar -C "$src" -xf -
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
make -s -C "$src" clean >/dev/null
make -s -C "$src" -j"$(nproc)" CFLAGS="$(dpkg-buildflags --get CFLAGS)" \
	CPPFLAGS="$(dpkg-buildflags --get CPPFLAGS)" LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" \
	mows-fuse mowsctl mows-crc32
make -s -C "$src" install DESTDIR="$root" PREFIX=/usr UNITDIR=/lib/systemd/system \
	DOCDIR=/usr/share/doc/mows
doc=$root/usr/share/doc/mows
install -m 0644 "$here/copyright" "$doc/copyright"
gzip -9n -c "$here/changelog" >"$doc/changelog.gz"
find "$root/usr/share/man" -type f -exec gzip -9n {} +
for b in "$root"/usr/bin/*; do
	strip --remove-section=.comment --remove-section=.note --strip-unneeded "$b"
done

# dpkg-shlibdeps wants a debian/control of a source package next to it.
work=$out/shlibdeps
mkdir -p "$work/debian"
printf 'Source: mows\n\nPackage: mows\nArchitecture: any\n' >"$work/debian/control"
bins=$(cd "$root" && ls -d "$PWD"/usr/bin/*)
shlibs=$(cd "$work" && dpkg-shlibdeps -O $bins | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build.sh: dpkg-shlibdeps found no libraries" >&2; exit 1; }
depends="$shlibs, fuse3"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
	-e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" "$here/control.in" >"$root/DEBIAN/control"
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

deb=$out/mows_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$work" "$src"
echo "$deb"
