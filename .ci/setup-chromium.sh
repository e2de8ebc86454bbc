# Sourced by .ci/run (as root, `set -euo pipefail`): installs Debian's chromium for the
# browser tests (tests/test_cti_browser.py), which drive it with the playwright package
# (`executable_path`). No browser is downloaded: `playwright install` is never run.
# Exports XIVO_BUS_CHROMIUM for the tests.

if ! [ -x /usr/bin/chromium ]; then
    apt-get update -q
    apt-get install -y -q chromium fonts-dejavu-core
fi
export XIVO_BUS_CHROMIUM=/usr/bin/chromium
/usr/bin/chromium --version 2>/dev/null | head -1
