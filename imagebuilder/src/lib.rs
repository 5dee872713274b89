//! vlx-image: bakes what the installer lays on the SAN.
