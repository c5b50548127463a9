# Registered in place of a test whose tool is missing, so that ctest fails instead of skipping:
#   cmake -DMESSAGE=... -P fail.cmake
message(FATAL_ERROR "${MESSAGE}")
