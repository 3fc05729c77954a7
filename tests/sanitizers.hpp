// Test helper: MPP_TEST_SANITIZED is defined when AddressSanitizer or ThreadSanitizer
// is on (g++ and clang++ say so differently). Their allocators replace glibc's
// malloc, so tests of glibc's memory behaviour skip themselves under it.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MPP_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MPP_TEST_SANITIZED 1
#endif
#endif
