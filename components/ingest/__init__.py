"""Raw MovieLens data: GroupLens file readers, a synthetic generator and a downloader."""
