"""Medical image archives: de-identified scans, series descriptors and similar-case reports."""
