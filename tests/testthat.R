library(testthat)
library(sceval)
test_check("sceval")
