#!/usr/bin/env Rscript
# Build inst/extdata/genes_human.tsv.gz, the human gene-ID table that
# sceval.data.genes reads (symbol <-> Ensembl gene <-> Entrez gene).
#
# Source: the Bioconductor annotation package org.Hs.eg.db (NCBI Gene is its
# central key; the Ensembl IDs are NCBI Gene's Ensembl cross-references).
# On Debian/Ubuntu it is packaged as r-bioc-org.hs.eg.db.
#
# Usage, from the repository root:
#     Rscript inst/scripts/build_gene_table.R [output.tsv.gz]
#
# Output columns (tab separated, gzip, UTF-8, no quoting, empty string = none):
#   symbol      official NCBI Gene symbol (= HGNC symbol; for the 37 mitochondrial
#               genes the HGNC MT- name, see below)
#   ensembl_id  Ensembl gene ID without version (ENSG...), "" if NCBI Gene has none
#   entrez_id   NCBI Gene ID(s); several joined with ";" (rare)
#   gene_type   NCBI Gene type (protein-coding, ncRNA, pseudo, ...); several joined with ";"
#   chromosome  NCBI chromosome(s) ("X;Y" for pseudoautosomal genes)
#
# One row per (symbol, ensembl_id) pair. The relation is many-to-many and is
# kept as such: one symbol can have several Ensembl IDs (e.g. genes also
# annotated on alternate haplotypes) and one Ensembl ID several symbols
# (e.g. read-through loci). Genes without an Ensembl ID keep one row with an
# empty ensembl_id so that the symbol list is complete. Choosing one ID is
# left to sceval.data.genes (documented there).
#
# The mouse table is built by inst/scripts/build_gene_table_mouse.py (there is
# no org.Mm.eg.db in Debian).

suppressPackageStartupMessages(library(org.Hs.eg.db))

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[[1]] else file.path("inst", "extdata", "genes_human.tsv.gz")

collapse <- function(x) paste(sort(unique(x[!is.na(x) & x != ""])), collapse = ";")

symbol <- toTable(org.Hs.egSYMBOL)        # gene_id, symbol (one per gene)
ensembl <- toTable(org.Hs.egENSEMBL)      # gene_id, ensembl_id (many-to-many)
genetype <- toTable(org.Hs.egGENETYPE)    # gene_id, gene_type (one per gene)
chrom <- toTable(org.Hs.egCHR)            # gene_id, chromosome (X and Y for PAR genes)

# one chromosome string per gene
chrom <- aggregate(chromosome ~ gene_id, data = chrom, FUN = collapse)

# Mitochondrially encoded genes: NCBI Gene names them COX1, ND1, TRNA, ...;
# HGNC, Ensembl/GENCODE and every 10x/Cell Ranger reference use MT-CO1, MT-ND1,
# MT-TA, .... Use the HGNC names (systematic: "MT-" + the NCBI symbol with
# TRN -> T, COX -> CO, CYTB -> CYB). org.Hs.eg.db's ALIAS map lacks them.
mt_ids <- chrom$gene_id[chrom$chromosome == "MT"]
is_mt <- symbol$gene_id %in% mt_ids
hgnc_mt <- sub("^CYTB$", "CYB", sub("^COX", "CO", sub("^TRN", "T", symbol$symbol[is_mt])))
symbol$symbol[is_mt] <- paste0("MT-", hgnc_mt)
stopifnot(c("MT-CO1", "MT-CYB", "MT-ND4L", "MT-TL1", "MT-RNR2") %in% symbol$symbol)

genes <- merge(symbol, genetype, by = "gene_id", all.x = TRUE)
genes <- merge(genes, chrom, by = "gene_id", all.x = TRUE)
genes <- merge(genes, ensembl, by = "gene_id", all.x = TRUE)
genes[is.na(genes)] <- ""

# one row per (symbol, ensembl_id); collapse the rare several-Entrez cases
key <- paste(genes$symbol, genes$ensembl_id, sep = "\r")
groups <- split(seq_len(nrow(genes)), key)
tab <- data.frame(
  symbol = vapply(groups, function(i) genes$symbol[i[1]], ""),
  ensembl_id = vapply(groups, function(i) genes$ensembl_id[i[1]], ""),
  entrez_id = vapply(groups, function(i) {
    ids <- unique(genes$gene_id[i])
    paste(ids[order(as.integer(ids))], collapse = ";")
  }, ""),
  gene_type = vapply(groups, function(i) collapse(genes$gene_type[i]), ""),
  chromosome = vapply(groups, function(i) collapse(genes$chromosome[i]), ""),
  stringsAsFactors = FALSE
)
rownames(tab) <- NULL
# deterministic order: by symbol (C locale), then Ensembl ID
tab <- tab[order(tab$symbol, tab$ensembl_id, method = "radix"), ]

stopifnot(!anyNA(tab), !any(grepl("[\t\n]", as.matrix(tab))))

con <- gzfile(out, open = "wb")
write.table(tab, con, sep = "\t", quote = FALSE, row.names = FALSE, col.names = TRUE,
            na = "", fileEncoding = "UTF-8")
close(con)

meta <- metadata(org.Hs.eg.db)
src <- function(name) meta$value[meta$name == name]
message(sprintf(
  "wrote %s: %d rows, %d symbols, %d Ensembl IDs, %d protein-coding symbols",
  out, nrow(tab), length(unique(tab$symbol)),
  length(unique(tab$ensembl_id[tab$ensembl_id != ""])),
  length(unique(tab$symbol[tab$gene_type == "protein-coding"]))
))
message(sprintf(
  "source: org.Hs.eg.db %s (AnnotationDbi %s, %s); NCBI Gene %s; Ensembl %s",
  as.character(packageVersion("org.Hs.eg.db")),
  as.character(packageVersion("AnnotationDbi")), R.version.string,
  src("EGSOURCEDATE"), src("ENSOURCEDATE")
))
