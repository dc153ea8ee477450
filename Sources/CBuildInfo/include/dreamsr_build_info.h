#ifndef DREAMSR_BUILD_INFO_H
#define DREAMSR_BUILD_INFO_H

/// The git commit the binary was built from: scripts/build-release.sh passes it with
/// `-Xcc -DDREAMSR_BUILD_COMMIT="..."`; other builds say "unknown".
const char *dreamsr_build_commit(void);

#endif
