#!/usr/bin/env Rscript
# Build inst/extdata/gene_sets_human.tsv.gz, the gene-function labels that
# sceval.data.gene_sets reads (tasks gene_function and gene_network).
#
# Source: Gene Ontology annotations of human genes as shipped in the Bioconductor
# annotation package org.Hs.eg.db (map GO2ALLEGS: every gene annotated to a term or
# to any of its descendants), term names from GO.db. On Debian/Ubuntu they are the
# packages r-bioc-org.hs.eg.db and r-bioc-go.db. Nothing is downloaded.
#
# Usage, from the repository root:
#     Rscript inst/scripts/build_gene_sets.R [output.tsv.gz]
#
# Output: a long table (tab separated, gzip, UTF-8, no quoting, header line)
#   set          gene-set name (see SETS below)
#   gene_symbol  NCBI Gene symbol (= HGNC symbol; MT- names for mitochondrial genes)
#   ensembl_id   Ensembl gene ID (lowest when NCBI Gene links several), "" if none
#   label        the gene's class in that set
# One row per (set, gene); every gene has exactly one label within a set.
#
# Rules (the same for every set):
#   * genes: protein-coding NCBI Gene records only;
#   * membership ("positive" evidence): annotations other than IEA (electronic,
#     uncurated) and ND (no data);
#   * exclusion: a gene annotated with ANY evidence code (IEA included) to another
#     class of the same set is dropped, so classes are well separated;
#   * binary sets ("<class>" vs "other"): the negatives are a seeded random sample
#     (set.seed(1), twice the number of positives) of protein-coding genes with at
#     least one curated biological-process annotation and no annotation of any
#     evidence to the positive term or to the related terms listed in `exclude`.

suppressPackageStartupMessages({
  library(org.Hs.eg.db)
  library(GO.db)
})

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[[1]] else file.path("inst", "extdata", "gene_sets_human.tsv.gz")

CURATED_EXCLUDED <- c("IEA", "ND")
NEGATIVES_PER_POSITIVE <- 2

# --- genes: protein-coding, symbol (MT- names as in build_gene_table.R), Ensembl ID
symbol <- toTable(org.Hs.egSYMBOL)
genetype <- toTable(org.Hs.egGENETYPE)
chrom <- toTable(org.Hs.egCHR)
ensembl <- toTable(org.Hs.egENSEMBL)
pc <- genetype$gene_id[genetype$gene_type == "protein-coding"]
symbol <- symbol[symbol$gene_id %in% pc, ]
mt_ids <- unique(chrom$gene_id[chrom$chromosome == "MT"])
is_mt <- symbol$gene_id %in% mt_ids
hgnc_mt <- sub("^CYTB$", "CYB", sub("^COX", "CO", sub("^TRN", "T", symbol$symbol[is_mt])))
symbol$symbol[is_mt] <- paste0("MT-", hgnc_mt)
ensembl <- ensembl[order(ensembl$gene_id, ensembl$ensembl_id, method = "radix"), ]
ensembl <- ensembl[!duplicated(ensembl$gene_id), ]
genes <- merge(symbol, ensembl, by = "gene_id", all.x = TRUE)
genes$ensembl_id[is.na(genes$ensembl_id)] <- ""
rownames(genes) <- genes$gene_id

# --- GO annotations propagated to ancestor terms
go <- toTable(org.Hs.egGO2ALLEGS)
go <- go[go$gene_id %in% genes$gene_id, c("gene_id", "go_id", "Evidence", "Ontology")]
curated <- go[!go$Evidence %in% CURATED_EXCLUDED, ]
annotated <- function(term, any_evidence = FALSE) {
  tab <- if (any_evidence) go else curated
  sort(unique(tab$gene_id[tab$go_id %in% term]))
}
bp_universe <- sort(unique(curated$gene_id[curated$Ontology == "BP"]))

term_name <- function(id) Term(GOTERM[[id]])

# --- the sets: label -> GO term
SETS <- list(
  tf_dna_binding = list(
    type = "binary",
    positive = c(tf = "GO:0003700"),  # DNA-binding transcription factor activity
    # transcription regulator activity, DNA binding, transcription coregulator activity
    exclude = c("GO:0140110", "GO:0003677", "GO:0003712")
  ),
  protein_kinase = list(
    type = "binary",
    positive = c(kinase = "GO:0004672"),  # protein kinase activity
    exclude = c("GO:0016301", "GO:0019887")  # kinase activity, kinase regulator activity
  ),
  go_bp_5 = list(
    type = "multiclass",
    classes = c(
      immune_response = "GO:0006955",
      cell_cycle = "GO:0007049",
      translation = "GO:0006412",
      synaptic_signaling = "GO:0099536",
      lipid_metabolism = "GO:0006629"
    )
  ),
  go_cc_5 = list(
    type = "multiclass",
    classes = c(
      mitochondrial_inner_membrane = "GO:0005743",
      nucleolus = "GO:0005730",
      extracellular_matrix = "GO:0031012",
      er_membrane = "GO:0005789",
      cytosolic_ribosome = "GO:0022626"
    )
  )
)

set.seed(1, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")
rows <- list()
for (name in names(SETS)) {
  s <- SETS[[name]]
  if (s$type == "binary") {
    label <- names(s$positive)
    pos <- annotated(s$positive)
    bad <- annotated(c(s$positive, s$exclude), any_evidence = TRUE)
    pool <- setdiff(bp_universe, bad)
    n_neg <- min(length(pool), NEGATIVES_PER_POSITIVE * length(pos))
    neg <- sort(sample(pool, n_neg))
    lab <- data.frame(gene_id = c(pos, neg), label = rep(c(label, "other"), c(length(pos), n_neg)))
    terms <- c(s$positive, s$exclude)
  } else {
    members <- lapply(s$classes, annotated)
    any_ev <- lapply(s$classes, annotated, any_evidence = TRUE)
    lab <- do.call(rbind, lapply(names(s$classes), function(cl) {
      others <- unique(unlist(any_ev[names(any_ev) != cl]))
      keep <- setdiff(members[[cl]], others)
      data.frame(gene_id = keep, label = rep(cl, length(keep)))
    }))
    terms <- s$classes
  }
  for (t in terms) message(sprintf("  %s: %s %s", name, t, term_name(t)))
  rows[[name]] <- data.frame(
    set = name,
    gene_symbol = genes[lab$gene_id, "symbol"],
    ensembl_id = genes[lab$gene_id, "ensembl_id"],
    label = lab$label,
    stringsAsFactors = FALSE
  )
}
tab <- do.call(rbind, rows)
rownames(tab) <- NULL
tab <- tab[order(tab$set, tab$label, tab$gene_symbol, method = "radix"), ]
stopifnot(
  !anyNA(tab), !any(grepl("[\t\n]", as.matrix(tab))),
  !anyDuplicated(paste(tab$set, tab$gene_symbol))
)

con <- gzfile(out, open = "wb")
write.table(tab, con, sep = "\t", quote = FALSE, row.names = FALSE, col.names = TRUE,
            na = "", fileEncoding = "UTF-8")
close(con)

for (name in names(SETS)) {
  counts <- table(tab$label[tab$set == name])
  message(sprintf("%s: %s", name, paste(names(counts), counts, sep = "=", collapse = ", ")))
}
meta <- metadata(org.Hs.eg.db)
src <- function(name) meta$value[meta$name == name]
message(sprintf(
  "wrote %s: %d rows; org.Hs.eg.db %s, GO.db %s, AnnotationDbi %s, %s; GO %s, GO annotations %s",
  out, nrow(tab), as.character(packageVersion("org.Hs.eg.db")),
  as.character(packageVersion("GO.db")), as.character(packageVersion("AnnotationDbi")),
  R.version.string, src("GOSOURCEDATE"), src("GOEGSOURCEDATE")
))
