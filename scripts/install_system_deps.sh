#!/usr/bin/env bash
# System packages the project uses when the machine lets us install them (root + apt):
#   wordnet-base, wordnet-sense-index  WordNet 3.0 files for nltk when nltk.download has no network
#   chromium                           headless browser that renders the HTML report in a test
# Anything missing afterwards is reported by the code that needs it, with its remedy.
set -u
want=()
[ -f /usr/share/wordnet/data.noun ] || want+=(wordnet-base)
[ -f /usr/share/wordnet/index.sense ] || want+=(wordnet-sense-index)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${want[@]}" >/tmp/wit-apt.log 2>&1 \
    || { apt-get update -q >/tmp/wit-apt.log 2>&1 && apt-get install -y -q --no-install-recommends "${want[@]}" >>/tmp/wit-apt.log 2>&1; } \
    || echo "warning: could not apt-get install ${want[*]} (see /tmp/wit-apt.log)"
else
  echo "note: not root or no apt-get; install ${want[*]} yourself if you need them (see README)"
fi
exit 0
